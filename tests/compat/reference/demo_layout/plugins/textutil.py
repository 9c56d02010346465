from __future__ import annotations


def upper_header(text: str) -> str:
    """The first line upper-cased, the rest as it is."""
    head, sep, rest = text.partition("\n")
    return head.upper() + sep + rest
