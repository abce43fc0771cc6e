"""What many test files share, defined once: the clock constant, settings builders, fake Kafka
clients, topics and a worker running in a thread. The pure pipeline driver stays in
tests/conftest.py; reading topics back and comparing with process-file is dev.verify.
"""
