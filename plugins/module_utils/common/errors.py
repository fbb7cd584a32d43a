# -*- coding: utf-8 -*-
# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection's one error family for the API side, in plain Python so that
code without the Kubernetes client (the waiter) can raise it too."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class KubeError(Exception):
    """Anything that went wrong talking to the API server, said for a human.

    ``status`` is the HTTP status (None for connection problems), ``verb`` and
    ``resource`` what was attempted (``create``, ``persistentvolumes``),
    ``name`` the object.
    """

    def __init__(self, msg, status=None, verb=None, resource=None, name=None, reason=None):
        super(KubeError, self).__init__(msg)
        self.msg = msg
        self.status = status
        self.verb = verb
        self.resource = resource
        self.name = name
        self.reason = reason

    def to_dict(self):
        return {"msg": self.msg, "status": self.status, "verb": self.verb,
                "resource": self.resource, "name": self.name, "reason": self.reason}
