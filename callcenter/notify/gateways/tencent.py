"""Tencent Cloud SMS (短信, API version 2021-01-11) through Tencent's own SDK
(`tencentcloud-sdk-python-sms`): SendSms with the kind's approved template id and its values in
order, and PullSmsSendStatus for the delivery reports (the pull must be enabled on the account;
each report is handed out once). The endpoint is configurable (TENCENT_SMS_ENDPOINT), so tests
point it at a local server speaking the same API."""

from __future__ import annotations

from urllib.parse import urlsplit

from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.sms.v20210111 import models, sms_client

from callcenter.notify import templates
from callcenter.notify.gateways.base import Outgoing, PermanentError, Receipt, Sent, TransientError

# Error codes worth another try later; any other code fails the message at once.
TRANSIENT_PREFIXES = ("ClientNetworkError", "ServerNetworkError", "InternalError", "RequestLimitExceeded",
                      "LimitExceeded.PhoneNumberThirtySecondLimit", "LimitExceeded.PhoneNumberOneHourLimit",
                      "FailedOperation.InsufficientBalanceInSmsPackage")


def is_transient(code: str) -> bool:
    return code.startswith(TRANSIENT_PREFIXES)


class TencentSmsGateway:
    name = "tencent"

    def __init__(self, *, secret_id: str, secret_key: str, app_id: str, sign_name: str, template_ids: dict[str, str],
                 endpoint: str, region: str, timeout: int = 10):
        url = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        http = HttpProfile(protocol=url.scheme, endpoint=url.netloc, reqTimeout=timeout)
        self.client = sms_client.SmsClient(credential.Credential(secret_id, secret_key), region, ClientProfile(httpProfile=http))
        self.app_id, self.sign_name, self.template_ids = app_id, sign_name, template_ids

    def send(self, message: Outgoing) -> Sent:
        kind = templates.kind_or_raise(message.kind)
        request = models.SendSmsRequest()
        request.SmsSdkAppId, request.SignName = self.app_id, self.sign_name
        request.TemplateId = self.template_ids[kind.name]
        request.TemplateParamSet = [message.params[name] for name in kind.variables]
        request.PhoneNumberSet = [message.address]
        request.SessionContext = str(message.id)
        response = self._call(self.client.SendSms, request)
        status = response.SendStatusSet[0]
        if status.Code != "Ok":
            raise (TransientError if is_transient(status.Code) else PermanentError)(f"腾讯云短信：{status.Code} {status.Message}")
        return Sent(provider_message_id=status.SerialNo)

    def receipts(self) -> list[Receipt]:
        request = models.PullSmsSendStatusRequest()
        request.SmsSdkAppId, request.Limit = self.app_id, 100
        response = self._call(self.client.PullSmsSendStatus, request)
        return [Receipt(provider_message_id=row.SerialNo, delivered=row.ReportStatus == "SUCCESS",
                        detail=f"{row.ReportStatus} {row.Description or ''}".strip())
                for row in response.PullSmsSendStatusSet or []]

    @staticmethod
    def _call(method, request):
        try:
            return method(request)
        except TencentCloudSDKException as exc:
            code = exc.get_code() or "Unknown"
            error = TransientError if is_transient(code) else PermanentError
            raise error(f"腾讯云短信：{code} {str(exc.get_message())[:300]}") from exc
