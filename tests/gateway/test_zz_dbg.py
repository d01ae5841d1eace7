from tests.gateway.test_commands_e2e import *
from passerelle.models import OutboxMessage
def test_dbg(service, smtp_sink, session_factory):
    stranger = "ana.garcia@diputacion.example"
    send(service.smtp_port, make_mail(sender=stranger, sender_name="Ana García", message_id="h1@diputacion.example",
                                      subject="Trabajadores fronterizos"), mail_from=stranger)
    import time; time.sleep(3)
    with session_scope(session_factory) as s:
        print([(r.status, r.reason) for r in s.scalars(select(InboundMessage))])
        print([(r.recipient, r.status, r.last_error) for r in s.scalars(select(OutboxMessage))])
    print([r.rcpt_tos for r in smtp_sink.received])
