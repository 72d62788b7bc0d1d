"""The bridge: the app-facing process (Starlette + uvicorn) in front of the MQTT broker.

link.py        one reconnecting MQTT client (user `bridge`), subscribed to `nxg/#` (to nothing beside
               the embedded broker, which hands the hub its messages in-process)
hub.py         in-process fan-out of what the broker routes to app sockets and gateway devices
auth.py        the admin credential (Bearer header, `?token=` on WebSockets)
api.py         seed 000 REST (`/api/...`); config_h.py and protocol_doc.py feed two of its routes
ws_app.py      `/ws/app`: live device messages down, commands up
ws_gateway.py  `/ws/gateway`: devices speaking JSON over a WebSocket, republished onto MQTT
health.py      `/health`
app.py         `create_app(...)`: routes and the lifespan that owns the link and the hub
server.py      `open_bridge(...)`: uvicorn in-process on a pre-bound socket
"""
