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
