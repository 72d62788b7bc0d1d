"""NXG MQTT: an MQTT-native IoT backend (core, embedded broker, bridge)."""

__version__ = "0.1.0"
