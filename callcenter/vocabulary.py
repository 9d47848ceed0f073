"""Status vocabularies: one enum per vocabulary, each member its stored value (a str, so it
compares equal to what the database, JSON and templates hold) with its Chinese label.

Sets derived from a vocabulary (open orders, waiting calls …) are defined beside it, from its
members, never re-listed elsewhere; the pages' JavaScript reads the same labels and sets
(`vocabulary.for_pages`, rendered into every page)."""

from __future__ import annotations

from enum import StrEnum


class Vocabulary(StrEnum):
    """Members are declared as `NAME = "value", "标签"`."""

    label: str

    def __new__(cls, value: str, label: str):
        member = str.__new__(cls, value)
        member._value_ = value
        member.label = label
        return member

    @classmethod
    def labels(cls) -> dict[str, str]:
        return {member.value: member.label for member in cls}

    @classmethod
    def label_of(cls, value: str | None) -> str:
        """The label of a stored value; an unknown value is shown as it is, none as ''."""
        if value is None:
            return ""
        try:
            return cls(value).label
        except ValueError:
            return value

    @classmethod
    def choices(cls) -> str:
        """'a、b、c': the valid values, for an error message."""
        return "、".join(member.value for member in cls)
