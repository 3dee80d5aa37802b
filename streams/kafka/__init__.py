"""Kafka plumbing: how every client connects, the librdkafka publisher, topic
administration and the embedded broker."""
