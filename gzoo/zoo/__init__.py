"""The zoo: zoo.yaml's entries, validated, and (later) their weights on the Hub."""

from gzoo.zoo.registry import Reported, Zoo, ZooEntry, load_zoo, zoo_path

__all__ = ["Reported", "Zoo", "ZooEntry", "load_zoo", "zoo_path"]
