"""Reading a learner's proofs from ``training.evidence`` (see ``streams.core.evidence``).

All of a learner's proofs are in the partition of its userId (``evidence_partition``): the
reader looks at that partition only, from its beginning, and keeps the latest record per
course (a tombstone, written when the learner is erased, removes it).
"""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from schemas.outputs import TrainingEvidence
from streams.core import topics
from streams.core.evidence import evidence_partition
from streams.kafka.admin import drop_reached, partitions_of, topic_consumer
from streams.kafka.clients import KafkaConnection


async def read_evidence(kafka: KafkaConnection, prefix: str, user_id: int,
                        course_id: int | None = None, idle_s: float = 0.5
                        ) -> list[TrainingEvidence]:
    """The learner's current proofs, by course."""
    topic = topics.prefixed(topics.TRAINING_EVIDENCE, prefix)
    async with topic_consumer(kafka, fetch_max_wait_ms=int(idle_s * 1000 / 2)) as consumer:
        count = len(await partitions_of(consumer, [topic]))
        tp = TopicPartition(topic, evidence_partition(user_id, count))
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        return await _latest(consumer, tp, f"{user_id}/".encode(), course_id, idle_s)


async def _latest(consumer: AIOKafkaConsumer, tp: TopicPartition, prefix: bytes,
                  course_id: int | None, idle_s: float) -> list[TrainingEvidence]:
    """Read ``tp`` to its end offset, then until a fetch brings nothing (an end offset the
    embedded broker reports too low must not cut the list short)."""
    latest: dict[bytes, bytes | None] = {}
    targets = {tp: end for tp, end in (await consumer.end_offsets([tp])).items() if end}
    while True:
        batch = await consumer.getmany(tp, timeout_ms=int(idle_s * 1000))
        for record in batch.get(tp, ()):
            if record.key is not None and record.key.startswith(prefix):
                latest[record.key] = record.value
        await drop_reached(consumer, targets)
        if not targets and not batch:
            break
    found = []
    for value in latest.values():
        if value is None:
            continue
        try:
            evidence = TrainingEvidence.model_validate_json(value)
        except ValidationError:
            continue  # not a proof this version reads
        if course_id is None or evidence.courseId == course_id:
            found.append(evidence)
    return sorted(found, key=lambda e: (e.completedAt, e.courseId))
