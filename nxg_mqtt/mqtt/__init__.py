"""The MQTT 3.1.1 wire: packet types, a pure decoder and the encoders.

Neutral ground shared by the broker engine, the bridge's MQTT link, the tests and the benchmarks
(as Mosquitto's `lib/` is compiled into its broker and its clients). Nothing here knows of
sessions, plugins or the bridge, and importing it loads neither.
"""
