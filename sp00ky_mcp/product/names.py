"""Names people choose and others must tell apart (teams, invited emails, hostnames, tokens):
the characters refused in them, and the form in which two of them are the same name.

Two spellings that look alike are one name: names are compared after Unicode normalisation
NFKC (UAX #15), so a full-width letter (U+FF21) or a ligature (U+FB01) is the same as its
plain form, and where the rule is case-insensitive after case folding too (Unicode's default
caseless match, NFKC both before and after, since folding can undo a normal form).  Rows
written before this rule are compared the same way, both sides normalised, so nothing stored
needs rewriting.

Characters that do not show are refused (the callers raise their own error with the sentence
`hidden_problem` gives): a name holding one would look exactly like another
name, or (the bidi controls) make text around it read in another order.
"""

from __future__ import annotations

import unicodedata

# Unicode general categories that do not show or that steer the display of other text:
# controls (Cc); format characters (Cf), among them the zero-width space, joiners and
# no-break space, the soft hyphen, the bidi embeddings and overrides U+202A-U+202E, the
# isolates U+2066-U+2069 and the marks U+200E, U+200F and U+061C; surrogates (Cs); and the
# line and paragraph separators (Zl, Zp).
HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def hidden_character(text: str) -> str | None:
    """The first character of `text` that does not show, if any."""
    for char in text:
        if unicodedata.category(char) in HIDDEN_CATEGORIES:
            return char
    return None


def describe(char: str) -> str:
    """A character as 'U+200B ZERO WIDTH SPACE', since printing it would show nothing."""
    name = unicodedata.name(char, "") or "a control character"
    return f"U+{ord(char):04X} {name}"


def hidden_problem(argument: str, value: str) -> str | None:
    """The sentence refusing `value` as the argument `argument`, or None when it all shows."""
    char = hidden_character(value) or hidden_character(normal(value))
    if char is None:
        return None
    return (
        f"Argument '{argument}' contains an invisible or control character ({describe(char)}); "
        "remove it and pass the name as it is meant to be read."
    )


def normal(text: str) -> str:
    """The form a name is stored in: NFKC."""
    return unicodedata.normalize("NFKC", text)


def folded(text: str) -> str:
    """The form two case-insensitive names are compared in (NFKC_Casefold, in effect)."""
    return normal(normal(text).casefold())
