"""The gateway of each channel, built from the settings (`build`), which says clearly what is
missing rather than failing at the first message."""

from __future__ import annotations

from callcenter.config import Settings
from callcenter.notify import templates
from callcenter.notify.gateways.base import Gateway, GatewayConfigError
from callcenter.notify.gateways.outbox import OutboxGateway


def build(settings: Settings) -> dict[str, Gateway]:
    """{"sms": gateway, "wechat": gateway}; GatewayConfigError naming every missing setting."""
    return {"sms": _sms(settings), "wechat": _wechat(settings)}


def _sms(settings: Settings) -> Gateway:
    if settings.sms_gateway == "tencent":
        _require(settings, "SMS_GATEWAY=tencent", "tencent_sms_secret_id", "tencent_sms_secret_key", "tencent_sms_app_id")
        _require_templates("SMS_TEMPLATE_IDS", settings.sms_template_ids)
        from callcenter.notify.gateways.tencent import TencentSmsGateway

        return TencentSmsGateway(secret_id=settings.tencent_sms_secret_id, secret_key=settings.tencent_sms_secret_key.get_secret_value(),
                                 app_id=settings.tencent_sms_app_id, sign_name=settings.sms_sign_name,
                                 template_ids=settings.sms_template_ids, endpoint=settings.tencent_sms_endpoint,
                                 region=settings.tencent_sms_region)
    if settings.sms_gateway == "smpp":
        _require(settings, "SMS_GATEWAY=smpp", "smpp_host", "smpp_system_id", "smpp_password")
        from callcenter.notify.gateways.smpp import SmppGateway

        return SmppGateway(host=settings.smpp_host, port=settings.smpp_port, system_id=settings.smpp_system_id,
                           password=settings.smpp_password.get_secret_value(), system_type=settings.smpp_system_type,
                           source_addr=settings.smpp_source_addr, receipt_wait=settings.smpp_receipt_wait_seconds)
    return OutboxGateway()


def _wechat(settings: Settings) -> Gateway:
    if settings.wechat_gateway == "mp":
        _require(settings, "WECHAT_GATEWAY=mp", "wechat_app_id", "wechat_app_secret")
        _require_templates("WECHAT_TEMPLATE_IDS", settings.wechat_template_ids)
        from callcenter.notify.gateways.wechat import WechatGateway

        return WechatGateway(app_id=settings.wechat_app_id, app_secret=settings.wechat_app_secret.get_secret_value(),
                             template_ids=settings.wechat_template_ids, api_url=settings.wechat_api_url)
    return OutboxGateway()


def _require(settings: Settings, what: str, *names: str) -> None:
    missing = [name.upper() for name in names if not getattr(settings, name)]
    if missing:
        raise GatewayConfigError(f"{what} needs {', '.join(missing)}")


def _require_templates(setting: str, ids: dict[str, str]) -> None:
    missing = [name for name in templates.KINDS if not ids.get(name)]
    if missing:
        raise GatewayConfigError(f"{setting} has no template id for {', '.join(missing)}")
