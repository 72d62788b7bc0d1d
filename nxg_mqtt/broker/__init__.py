"""The NXG MQTT 3.1.1 broker engine (amqtt plugin contract, own protocol handling and routing).

Import what you need from its modules (`nxg_mqtt.broker.server`, …): this package imports nothing,
so loading one module never drags in the engine, amqtt or websockets.
"""
