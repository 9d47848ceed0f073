"""Pinyin keys for name search: 张大爷 → ('zhangdaye', 'zdy').

Surnames read differently from the same character in ordinary words (单 shan, 曾 zeng, 仇 qiu…),
so the first character takes its surname reading.
"""

from __future__ import annotations

from functools import lru_cache

from pypinyin import Style, lazy_pinyin

SURNAME_READINGS = {
    "单": "shan", "曾": "zeng", "仇": "qiu", "解": "xie", "查": "zha", "朴": "piao", "区": "ou",
    "覃": "qin", "繁": "po", "翟": "zhai", "尉": "yu", "乐": "yue", "卜": "bu", "缪": "miao",
    "秘": "bi", "种": "chong", "盖": "ge", "华": "hua", "任": "ren", "沈": "shen", "黑": "he",
    "长": "chang", "员": "yun", "朝": "chao", "召": "shao", "牟": "mou", "重": "chong", "薄": "bo",
}


@lru_cache(maxsize=65536)
def name_keys(name: str) -> tuple[str, str]:
    """(full pinyin, initials), lower-case ASCII letters only."""
    name = name.strip()
    if not name:
        return "", ""
    syllables = lazy_pinyin(name, style=Style.NORMAL, errors=lambda chars: [c for c in chars.lower() if c.isascii() and c.isalnum()])
    if name[0] in SURNAME_READINGS and syllables:
        syllables[0] = SURNAME_READINGS[name[0]]
    syllables = [s.replace("ü", "v") for s in syllables if s]
    return "".join(syllables), "".join(s[0] for s in syllables)
