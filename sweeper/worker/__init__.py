"""The worker: the loop that claims and tells trials, the evaluators it calls, what a finished
trial tells, and the supervisor of suspects."""
