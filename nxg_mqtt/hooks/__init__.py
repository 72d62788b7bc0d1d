"""Broker-neutral hooks: the core's auth, ACL and presence decisions for a broker that is not the
embedded one (Mosquitto through `mosquitto/nxg_plugin.c`, EMQX, VerneMQ), served over HTTP.

`service.HookService` holds the decisions' state (who holds which client id, which connection of
a device is current, pending kicks); `http.open_hook_listener` serves it on the internal listener.
"""
