"""The NXG MQTT 3.1.1 broker engine (amqtt plugin contract, own protocol handling and routing)."""

from nxg_mqtt.broker.codec import ProtocolError
from nxg_mqtt.broker.message import IncomingMessage
from nxg_mqtt.broker.server import BrokerContext, NxgBroker, PluginFactory
from nxg_mqtt.broker.session import BrokerSession

__all__ = ["BrokerContext", "BrokerSession", "IncomingMessage", "NxgBroker", "PluginFactory", "ProtocolError"]
