# -*- coding: utf-8 -*-
# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one way the collection waits for the cluster: poll, give up at a deadline.

Every wait (a PV gone after its delete, claims gone, pods evicted) is a
:class:`Waiter` polling a check that returns what is still not done. Giving up
raises :class:`WaitTimeout` naming what is left; ``progress`` (if given) hears
about every poll, so a caller can report how long it waited and on what.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible_collections.localpv.rollout.plugins.module_utils.common.errors import KubeError

DEFAULT_TIMEOUT = 300
POLL_INTERVAL = 1.0


class WaitTimeout(KubeError):
    """Still not done at the deadline. ``left`` is what the check last returned."""

    def __init__(self, msg, left=None, code="stuck", state=None):
        super(WaitTimeout, self).__init__(msg)
        self.left = list(left or [])
        self.code = code
        self.state = state or {}


class Waiter:
    """Poll ``check()`` every ``interval`` seconds until it returns nothing left,
    for at most ``timeout`` seconds. ``polls`` and ``waited`` say what it took."""

    def __init__(self, timeout=DEFAULT_TIMEOUT, interval=POLL_INTERVAL, sleep=time.sleep, clock=time.monotonic,
                 progress=None):
        self.timeout = timeout
        self.interval = interval
        self._sleep = sleep
        self._clock = clock
        self._progress = progress
        self.polls = 0
        self.waited = 0.0

    def until_done(self, check, what="", describe=str):
        """Return once ``check()`` returns an empty list; raise :class:`WaitTimeout`
        naming the items still left (``describe(item)``) at the deadline."""
        start = self._clock()
        while True:
            left = list(check() or [])
            self.polls += 1
            self.waited = self._clock() - start
            if self._progress:
                self._progress(what, left, self.waited)
            if not left:
                return
            if self.waited > self.timeout:
                raise WaitTimeout("%s: still there %ds later: %s" % (
                    what or "waiting", self.timeout, "; ".join(describe(x) for x in left)), left=left)
            self._sleep(self.interval)
