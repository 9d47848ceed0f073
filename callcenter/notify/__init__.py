"""The notification gateway: message templates (`templates.py`), the outbox and each recipient's
channel (`models.py`, `service.py`), the sender jobs (`jobs.py`) and the gateways that really
send (`gateways/`: the outbox, Tencent Cloud SMS, SMPP 3.4, WeChat template messages)."""
