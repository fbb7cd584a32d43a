# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A test's way into the middle of a playbook run: when the task named in
LPVT_PAUSE_AT starts, touch $LPVT_PAUSE_DIR/reached and wait (up to two minutes)
for the test to touch $LPVT_PAUSE_DIR/go. The test changes the cluster in
between, the way another actor would during a real run."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = """
name: lpvt_pause
type: aggregate
short_description: pause a run at a named task until a test says go (tests only)
description: Used by the integration tests to change the cluster between two tasks of a role.
requirements: [LPVT_PAUSE_AT and LPVT_PAUSE_DIR in the environment]
"""

import os
import time

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "lpvt_pause"
    CALLBACK_NEEDS_ENABLED = True

    def v2_playbook_on_task_start(self, task, is_conditional):
        where = os.environ.get("LPVT_PAUSE_DIR")
        if not where or task.get_name().split(" : ")[-1] != os.environ.get("LPVT_PAUSE_AT"):
            return
        open(os.path.join(where, "reached"), "w").close()
        deadline = time.time() + 120
        while not os.path.exists(os.path.join(where, "go")) and time.time() < deadline:
            time.sleep(0.2)
