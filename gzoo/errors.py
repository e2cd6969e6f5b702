"""The one exception type the CLI turns into a one-line message and an exit code."""


class GzooError(Exception):
    """A problem the user can fix; ``str(err)`` names the problem and the fix.

    ``exit_code`` follows the CLI contract: 2 for bad input, 1 for a failed run.
    """

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Interrupted(GzooError):
    """Ctrl-C during a long run that saved what it had: ``str(err)`` says where it stopped and how to go on."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=130)


def closest(name: str, candidates: list[str], n: int = 3) -> str:
    """A ' (did you mean ...?)' hint listing the candidates closest to ``name``, or ''."""
    import difflib

    matches = difflib.get_close_matches(name, candidates, n=n, cutoff=0.5)
    if not matches:
        # Substring matches catch short queries like "horse2zebra" that difflib scores low.
        matches = [c for c in candidates if name.lower() in c.lower()][:n]
    return f" (did you mean {', '.join(matches)}?)" if matches else ""


def malformed_yaml(path: object, err: Exception, what: str = "") -> GzooError:
    """The one-line error for a YAML syntax error in ``path``: 'FILE:LINE: malformed YAML: problem; ...'.

    ``what`` names the kind of file ('recipe '), ahead of the path.
    """
    mark = getattr(err, "problem_mark", None)
    where = f"{what}{path}:{mark.line + 1}" if mark else f"{what}{path}"
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    return GzooError(f"{where}: malformed YAML: {problem}; fix the syntax at that line")


def missing_extra(feature: str, extra: str, module: str) -> GzooError:
    """The error for an optional dependency that is not installed: one command installs the whole extra, so a
    user never meets its packages one failure at a time."""
    return GzooError(f"{feature} needs the optional dependencies of gzoo[{extra}] ({module} is not installed); "
                     f"install them with: pip install 'gzoo[{extra}]'")
