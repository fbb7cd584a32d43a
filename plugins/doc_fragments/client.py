# -*- coding: utf-8 -*-
# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The options and requirements every API module of the collection shares
(kube.CLIENT_ARG_SPEC), documented once."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):

    DOCUMENTATION = r"""
requirements:
  - "python >= 3.9"
  - "kubernetes >= 24.2.0"
options:
  workers:
    description:
      - Number of concurrent requests to the API server. Only bulk work (creating, changing or deleting many
        PVs) uses more than one; every module accepts it so that one C(module_defaults) group fits all.
    type: int
    default: 16
    version_added: 0.1.0
  request_timeout:
    description: Read timeout of one request, in seconds; requests are retried on timeouts, 429 and 5xx answers.
    type: int
    default: 60
    version_added: 0.1.0
  retry_deadline:
    description:
      - How long, in seconds from its first try, a request the API server throttles (429, or 503 with
        C(Retry-After), as API Priority and Fairness and the inflight limits answer) is tried again. The wait
        honours C(Retry-After), backs off exponentially with jitter, and fewer requests are kept in flight
        while the server throttles.
      - Failures that waiting does not cure soon (no connection, timeouts, other 5xx answers) are tried
        six times, whatever this says, so that an unreachable API server is reported in seconds.
    type: int
    default: 300
    version_added: 0.1.0
"""
