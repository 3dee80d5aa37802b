"""The publisher's librdkafka settings, without a broker."""

from __future__ import annotations

from streams.kafka.publisher import Publisher
from streams.settings import Settings


def test_extra_config_is_merged_over_the_shared_settings() -> None:
    settings = Settings(kafka_linger_ms=7)
    config = Publisher(
        settings, client_id="edume-streams-worker", extra_config={"batch.num.messages": 1}
    ).config()
    assert config["batch.num.messages"] == 1
    assert config["client.id"] == "edume-streams-worker"
    assert (config["acks"], config["linger.ms"]) == ("all", 7)
    assert Publisher(settings, extra_config={"linger.ms": 0}).config()["linger.ms"] == 0
    assert "batch.num.messages" not in Publisher(settings).config()
