"""Text from files (op names, labels, file names) made safe to print on a terminal."""

from __future__ import annotations


def printable(value: object) -> str:
    """`value` as one line of visible text: control characters (newlines, escape sequences) and
    bytes of undecodable file names are shown as backslash escapes instead of acting on the
    terminal or failing to encode."""
    text = str(value)
    try:  # a file name's undecodable bytes (surrogate escapes) back to bytes, shown as \xNN
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # other lone surrogates
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)
