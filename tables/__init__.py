"""State records and pure state transitions: no Kafka, database or clock imports."""
