"""What many test files share, defined once: the clock constant and a fake clock (`clock`),
settings builders (`settings`), fake Kafka clients (`fakes`), topics (`topics`), workers built or
running in a thread (`workers`) and the Kafka-equals-process-file check (`outputs`). The pure
pipeline driver stays in tests/conftest.py; reading topics back and comparing records is dev.verify.
"""
