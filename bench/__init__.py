"""NXG MQTT benchmarks: `python -m bench.broker_bench` and `python -m bench.load`."""
