"""``enforcer forward sqs``: S3 event notifications from an SQS queue onto the Kafka topic the
enforcer consumes (AWS, where EventBridge cannot target Kafka).

- :mod:`~enforcer.forward.messages` (pure): an SQS message body → the Kafka records to produce;
- :mod:`~enforcer.forward.forwarder`: the loop (receive → produce → delete), behind two small
  ports, the queue and the publisher;
- :mod:`~enforcer.forward.sqs`: the queue port on aiobotocore;
- :mod:`~enforcer.forward.service`: wiring (SQS, the Kafka producer, signals, health).

At-least-once: a message is deleted from the queue only after Kafka acknowledged every record
produced from it. A redelivered message is produced again; the enforcer handles an event twice
harmlessly (every action is idempotent).
"""
