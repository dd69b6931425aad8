"""What sipedge knows about Twilio Elastic SIP Trunking.

- :mod:`.catalog`: edges, regions and the host names built from them
- :mod:`.uri`: origination SIP URIs (parse, validate)
- :mod:`.overrides`: connection overrides of a trunk
- ``data/twilio.toml``: the embedded dataset of Twilio's published IP ranges
  (read by :mod:`sipedge.allowlist.parse`)
"""
