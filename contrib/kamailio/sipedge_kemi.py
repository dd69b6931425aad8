"""Kamailio KEMI entry file (app_python3) for sipedge: a stateful proxy that
relays each new INVITE to the target sipedge chooses, with Twilio's failover
rules, shared health, drain and OPTIONS probing. Loaded by kamailio.cfg
(modparam("app_python3", "load", KEMI_FILE)); everything it needs comes from
the cfg's defines (TARGETS_FILE, SIPEDGE_PATH, HEALTH_TABLE, STATE_FILE).

Kamailio forks its processes after mod_init(): each one then runs its own copy
of this module; child_init() gives each a fresh random generator. The failure
route of a call may run in another process than its request route (a timeout
runs in Kamailio's timer process): what the call tried travels in an AVP and
health in sipedge's shared table (HEALTH_TABLE, a file in /dev/shm).
"""
import sys

import KSR


def _define(name):
    """The value of a cfg define (quotes removed), "" when unset."""
    v = KSR.kx.get_def(name)
    if not isinstance(v, str):
        return ""
    v = v.strip()
    if len(v) >= 2 and v[0] == v[-1] == '"':
        v = v[1:-1]
    return v


def mod_init():
    path = _define("SIPEDGE_PATH")
    if path:
        for p in reversed(path.split(":")):
            if p and p not in sys.path:
                sys.path.insert(0, p)
    try:
        from sipedge.errors import SipedgeError
        from sipedge.integrations.kamailio import KamailioRouter
    except ImportError as e:
        KSR.err(f"sipedge: cannot import sipedge in {sys.executable} ({e}); set "
                "SIPEDGE_PATH to a venv's site-packages made from /usr/bin/python3 "
                "(see contrib/kamailio/README.md)\n")
        return None
    try:
        router = KamailioRouter.from_file(_define("TARGETS_FILE"), KSR,
                                          table=_define("HEALTH_TABLE"),
                                          state_file=_define("STATE_FILE"))
        router.publish()
    except SipedgeError as e:
        # one line naming the file and the fix; Kamailio then refuses to start
        KSR.err(f"sipedge: {e}\n")
        return None
    return kamailio(router)


class kamailio:
    def __init__(self, router):
        self.router = router

    def child_init(self, rank):
        return self.router.child_init(rank)

    def ksr_request_route(self, msg):
        if KSR.maxfwd.process_maxfwd(10) < 0:
            KSR.sl.sl_send_reply(483, "Too Many Hops")
            return 1
        if KSR.siputils.has_totag() > 0:
            # in-dialog: ACK, BYE, re-INVITE follow the Record-Route
            if KSR.rr.loose_route() > 0:
                KSR.tm.t_relay()
            elif KSR.is_ACK():
                if KSR.tm.t_check_trans() > 0:
                    KSR.tm.t_relay()
            else:
                KSR.sl.sl_send_reply(404, "Not here")
            return 1
        if KSR.is_CANCEL():
            if KSR.tm.t_check_trans() > 0:
                KSR.tm.t_relay()
            return 1
        if not KSR.is_INVITE():
            KSR.sl.sl_send_reply(405, "Method Not Allowed")
            return 1
        if KSR.tm.t_check_trans() == 0:
            return 1  # a retransmission, already handled
        KSR.rr.record_route()
        return self.router.relay_invite(msg)

    def ksr_sipedge_failure(self, msg):
        return self.router.failure_route(msg)

    def ksr_sipedge_reply(self, msg):
        # armed only for a target's trial call after its cool-down
        return self.router.reply_route(msg)

    def ksr_sipedge_timer(self, msg, evname):
        # rtimer's callback: a faked message and the event name
        return self.router.timer(evname)

    # Kamailio looks these up by name; kamailio.cfg turns them off
    # (kemi.onsend_route_callback / kemi.reply_route_callback = "none"), and
    # they are defined as well so that a cfg without those lines still works
    # (a missing one leaves an error behind that breaks the next KSR call).
    def ksr_reply_route(self, msg):
        return 1

    def ksr_onsend_route(self, msg):
        return 1
