"""Save on notice: SIGTERM (a scheduler's preemption or eviction notice) and the first SIGINT
(Ctrl-C) ask the training loop to stop after the step it is running, commit a checkpoint of
that exact step and end with an exit status that a restart policy can act on.

A handler only sets a flag; the loop reads it between ``tf.function`` calls (see
:mod:`.run`). After the first SIGINT, SIGINT gets back the disposition it had before the run
(the command line gives it the system default, so a second Ctrl-C ends the process at once;
the last committed checkpoint stays intact, since a commit is one atomic rename).
"""

import os
import signal
import threading

# Exit statuses of the command line after a save on notice: 128 + the signal's number, what
# a shell reports for a process that signal ended. TensorFlow's PreemptionCheckpointHandler
# exits with 143 after its own save on SIGTERM; Kubeflow's restartPolicy ExitCode restarts
# on 128-255 and fails on 1-127 (keras_resnet's bad-argument status is 2).
EXIT_STATUS = {signal.SIGTERM: 143, signal.SIGINT: 130}
# run.json's "status" of a run stopped by each signal.
RUN_STATUS = {signal.SIGTERM: "preempted", signal.SIGINT: "interrupted"}
# Test hook: "[SIGNAL[*K]@]EPOCH:POINT" makes the run send itself SIGTERM (or K x SIGNAL: INT,
# KILL, ...) when it reaches POINT of epoch EPOCH (1-based): after step POINT, at the start of
# the evaluation ("evaluate"), or between the epoch's commit and its files ("writes").
TEST_HOOK = "KERAS_RESNET_TEST_SIGNAL_AT"


class TrainingStopped(Exception):
    """The run stopped on a signal after committing its checkpoint: ``signal`` (its name),
    ``epoch`` (1-based, the epoch a rerun continues), ``step`` (steps of that epoch done),
    ``steps_per_epoch``, ``epochs_finished``, ``checkpoint`` (the committed path prefix)
    and ``exit_status`` (143 after SIGTERM, 130 after SIGINT)."""

    def __init__(self, signum, epoch, step, steps_per_epoch, epochs_finished, checkpoint):
        self.signum = signum
        self.signal = signal.Signals(signum).name
        self.epoch, self.step, self.steps_per_epoch = epoch, step, steps_per_epoch
        self.epochs_finished, self.checkpoint = epochs_finished, checkpoint
        self.exit_status = EXIT_STATUS[signum]
        super().__init__(
            f"{self.signal}: saved epoch {epoch}, step {step} of {steps_per_epoch} "
            f"({epochs_finished} epochs finished) in {checkpoint}; rerun the same command to "
            f"resume (exit status {self.exit_status})")


class Notice:
    """Context manager: while active (in the main thread; elsewhere it does nothing, as
    Python allows handlers only there), SIGTERM and SIGINT set :attr:`signum` instead of
    ending the process. A signal whose disposition was "ignore" stays ignored."""

    def __init__(self):
        self.signum = None
        self._previous = {}
        self._hook = _parse_hook(os.environ.get(TEST_HOOK))

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in EXIT_STATUS:
                previous = signal.getsignal(signum)
                if previous is not signal.SIG_IGN:
                    self._previous[signum] = previous
                    signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc):
        for signum, previous in self._previous.items():
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()
        return False

    def _handle(self, signum, frame):
        if self.signum is None or signum == signal.SIGTERM:  # SIGTERM's status wins
            self.signum = signum
        if signum == signal.SIGINT and signum in self._previous:
            previous = self._previous[signum]
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)

    @property
    def requested(self):
        return self.signum is not None

    def reached(self, epoch, point):
        """Test hook (:data:`TEST_HOOK`): the run is at ``point`` of ``epoch`` (1-based)."""
        if self._hook is not None and self._hook[2:] == (epoch, str(point)):
            (signum, times), self._hook = self._hook[:2], None
            for _ in range(times):
                os.kill(os.getpid(), signum)


def _parse_hook(text):
    if not text:
        return None
    signum, times = signal.SIGTERM, 1
    if "@" in text:
        name, text = text.split("@", 1)
        name, _, times = name.partition("*")
        signum, times = signal.Signals["SIG" + name.upper().removeprefix("SIG")], int(times or 1)
    epoch, point = text.split(":", 1)
    return signum, times, int(epoch), point
