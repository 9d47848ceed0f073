"""Every notification the hotline sends, in one place: its kind, its Chinese text and its
variables. Callers name a kind and pass the values (`Notifier.notify`); gateways that send
provider-registered templates (Tencent Cloud SMS, WeChat) map each kind to the template id the
provider approved (settings SMS_TEMPLATE_IDS, WECHAT_TEMPLATE_IDS) and send the values in the
order of `variables`; the others send the rendered text.

The texts carry the signature 【12349】 as the phones show it: a template registered with an SMS
provider is its `body`, the signature being the provider's sign name (SMS_SIGN_NAME)."""

from __future__ import annotations

import string
from dataclasses import dataclass

SIGN = "12349"


@dataclass(frozen=True)
class Kind:
    name: str
    label: str  # as supervisors read it in the outbox
    body: str  # str.format template with the variables below, no signature
    variables: tuple[str, ...]

    def render(self, values: dict[str, str]) -> str:
        return f"【{SIGN}】" + self.body.format(**values)


KINDS = {kind.name: kind for kind in (
    Kind("order_dispatched_provider", "派单通知（含登录链接）",
         "新工单 {number}（{service}），请于 {minutes} 分钟内接单：{link}", ("number", "service", "minutes", "link")),
    Kind("order_dispatched_provider_nolink", "派单通知",
         "新工单 {number}（{service}），请于 {minutes} 分钟内接单。", ("number", "service", "minutes")),
    Kind("order_dispatched_elder", "承接通知（含确认码）",
         "您的{service}服务（工单 {number}）已由{provider}承接。服务完成后请把确认码 {code} 告诉服务人员。",
         ("service", "number", "provider", "code")),
    Kind("visitor_login_link", "巡访员登录链接",
         "{name}您好，请点击链接登录{community}巡访页面（{minutes} 分钟内有效，仅可使用一次）：{link}",
         ("name", "community", "minutes", "link")),
)}


class UnknownKind(ValueError):
    pass


def kind_or_raise(name: str) -> Kind:
    if name not in KINDS:
        raise UnknownKind(f"no notification kind {name!r} (known: {', '.join(KINDS)})")
    return KINDS[name]


def values_for(kind: Kind, values: dict) -> dict[str, str]:
    """The values of `kind`'s variables as strings; a missing or unexpected one is a bug in the
    caller, said at once (not a text with a hole sent to an elder)."""
    given, wanted = set(values), set(kind.variables)
    if given != wanted:
        raise ValueError(f"{kind.name}: variables {sorted(wanted)} expected, got {sorted(given)}")
    return {name: str(values[name]) for name in kind.variables}


def _check_templates() -> None:
    """Each body names exactly its variables (checked on import: a typo fails every test)."""
    for kind in KINDS.values():
        named = {field for _, field, _, _ in string.Formatter().parse(kind.body) if field}
        assert named == set(kind.variables), f"{kind.name}: body names {named}, variables {kind.variables}"


_check_templates()
