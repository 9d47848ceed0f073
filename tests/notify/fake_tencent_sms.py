"""A local server speaking Tencent Cloud SMS's API (version 2021-01-11) as far as we use it:
SendSms and PullSmsSendStatus, POSTed as JSON with a TC3-HMAC-SHA256 signature, which it checks
with the secret key, as the provider does. It answers as the provider does, an error too
(`{"Response": {"Error": {"Code", "Message"}, "RequestId"}}`), and validates what the SDK sent:
the action and version, the application, the sign name, the template and its parameters, the phone."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRET_ID, SECRET_KEY, APP_ID, SIGN_NAME = "AKIDtest0000000000000000000000000000", "test-secret-key-0000000000000", "1400000001", "12349"
VERSION = "2021-01-11"


class FakeTencentSms:
    """`templates`: template id → number of parameters. `errors`: error codes to answer the next
    SendSms requests with (a list, consumed in order); `bad_numbers`: phones answered with a
    per-number error code. `sent`: every accepted message; `reports`: receipts not yet pulled."""

    def __init__(self, templates: dict[str, int]):
        self.templates, self.errors, self.bad_numbers = templates, [], {}
        self.sent: list[dict] = []
        self.reports: list[dict] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    # --- the API -------------------------------------------------------------------------------

    def answer(self, headers, body: bytes) -> dict:
        problem = self.check_signature(headers, body) or self.check_headers(headers)
        if problem:
            return problem
        params = json.loads(body)
        if params.get("SmsSdkAppId") != APP_ID:
            return error("InvalidParameterValue.SdkAppIdNotExist", "SdkAppId not exist.")
        action = headers["X-TC-Action"]
        if action == "SendSms":
            return self.send_sms(params)
        if action == "PullSmsSendStatus":
            return self.pull_status(params)
        return error("InvalidAction", f"action {action} not found")

    def send_sms(self, params: dict) -> dict:
        with self.lock:
            if self.errors:
                return error(self.errors.pop(0), "simulated error")
        if params.get("SignName") != SIGN_NAME:
            return error("FailedOperation.SignatureIncorrectOrUnapproved", "signature not approved")
        template = params.get("TemplateId")
        if template not in self.templates:
            return error("FailedOperation.TemplateIncorrectOrUnapproved", "template not approved")
        values = params.get("TemplateParamSet") or []
        if len(values) != self.templates[template] or not all(isinstance(v, str) and v for v in values):
            return error("InvalidParameterValue.TemplateParameterFormatError", "template parameters do not match")
        statuses = []
        for phone in params.get("PhoneNumberSet") or []:
            if not re.fullmatch(r"\+861\d{10}", phone):
                statuses.append(number_status(phone, "", "InvalidParameterValue.IncorrectPhoneNumber", "incorrect phone number"))
            elif phone in self.bad_numbers:
                statuses.append(number_status(phone, "", self.bad_numbers[phone], "simulated"))
            else:
                serial = f"2433:{uuid.uuid4().int % 10**20}"
                with self.lock:
                    self.sent.append({"serial": serial, "phone": phone, "template": template, "values": values,
                                      "session": params.get("SessionContext", "")})
                    self.reports.append({"SerialNo": serial, "PhoneNumber": phone, "ReportStatus": "SUCCESS", "Description": "DELIVRD"})
                statuses.append(number_status(phone, serial, "Ok", "send success"))
        return {"Response": {"SendStatusSet": statuses, "RequestId": str(uuid.uuid4())}}

    def pull_status(self, params: dict) -> dict:
        with self.lock:
            taken, self.reports = self.reports[:params.get("Limit", 100)], self.reports[params.get("Limit", 100):]
        rows = [{"UserReceiveTime": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S"), "CountryCode": "86",
                 "SubscriberNumber": r["PhoneNumber"][3:], "SessionContext": "", **r} for r in taken]
        return {"Response": {"PullSmsSendStatusSet": rows, "RequestId": str(uuid.uuid4())}}

    @staticmethod
    def check_headers(headers) -> dict | None:
        if headers.get("X-TC-Version") != VERSION:
            return error("InvalidParameterValue", f"version {headers.get('X-TC-Version')} not supported")
        if not headers.get("X-TC-Region"):
            return error("MissingParameter", "region missing")
        return None

    @staticmethod
    def check_signature(headers, body: bytes) -> dict | None:
        """TC3-HMAC-SHA256, computed as Tencent Cloud documents it, from what was received."""
        match = re.fullmatch(r"TC3-HMAC-SHA256 Credential=([^/]+)/(\d{4}-\d\d-\d\d)/sms/tc3_request, "
                             r"SignedHeaders=content-type;host, Signature=([0-9a-f]{64})", headers.get("Authorization", ""))
        if not match:
            return error("AuthFailure.SignatureFailure", "authorization malformed")
        secret_id, day, signature = match.groups()
        if secret_id != SECRET_ID:
            return error("AuthFailure.SecretIdNotFound", "secret id not found")
        canonical = "\n".join(["POST", "/", "", f"content-type:{headers['Content-Type']}\nhost:{headers['Host']}\n", "content-type;host",
                               hashlib.sha256(body).hexdigest()])
        to_sign = "\n".join(["TC3-HMAC-SHA256", headers["X-TC-Timestamp"], f"{day}/sms/tc3_request",
                             hashlib.sha256(canonical.encode()).hexdigest()])
        key = ("TC3" + SECRET_KEY).encode()
        for part in (day, "sms", "tc3_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest(), signature):
            return error("AuthFailure.SignatureFailure", "signature mismatch")
        return None


def error(code: str, message: str) -> dict:
    return {"Response": {"Error": {"Code": code, "Message": message}, "RequestId": str(uuid.uuid4())}}


def number_status(phone: str, serial: str, code: str, message: str) -> dict:
    return {"SerialNo": serial, "PhoneNumber": phone, "Fee": 1 if code == "Ok" else 0, "SessionContext": "", "Code": code,
            "Message": message, "IsoCode": "CN"}


def _handler(fake: FakeTencentSms):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            data = json.dumps(fake.answer(self.headers, body)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    return Handler
