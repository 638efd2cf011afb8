"""A build from request to deployed server: jobs, analysis, research, the CodeReAct loop, healing, deploy."""
