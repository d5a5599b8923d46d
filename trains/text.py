"""Text that came from someone else, made safe to print on a terminal.

Names, reasons and messages cross the network (central's words, a station's reason, a
researcher's manifest, a train's file names). Printed raw, a control or bidi character can
rewrite what the reader sees: hide the lines after it, reorder a name, forge a line. Every
place that prints such text to a person passes it through :func:`printable`.
"""

from __future__ import annotations

import unicodedata

_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_HIDDEN = ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")  # control, format (bidi), separators


def printable(text: str, keep_newlines: bool = False) -> str:
    """``text`` with control, format (bidi, zero-width) and separator characters escaped
    as ``\\n``, ``\\x07``, ``\\u202e``; a backslash is doubled so nothing is ambiguous.
    ``keep_newlines``: line breaks stay (for a message of several lines of our own)."""
    out = []
    for char in text:
        if keep_newlines and char == "\n":
            out.append(char)
        elif char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif unicodedata.category(char) in _HIDDEN:
            code = ord(char)
            width = "x02" if code < 0x100 else ("u04" if code < 0x10000 else "U08")
            out.append(f"\\{width[0]}{code:{width[1:]}x}")
        else:
            out.append(char)
    return "".join(out)


def printable_lines(text: str) -> str:
    """A multi-line text (a file shown to an admin) escaped line by line."""
    return "\n".join(printable(line) for line in text.splitlines())
