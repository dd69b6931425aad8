"""Glue between sipedge and real SIP servers.

``sipedge.integrations.kamailio``: routing inside Kamailio 5.6+ through KEMI
(``app_python3``), with the health of the targets shared by every Kamailio
process. See ``contrib/kamailio/README.md``.
"""
