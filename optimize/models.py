"""A stored optimization (``manage.py optimize``): one row per study, updated when a resumed or extended study
finishes again; ``report`` is the JSON document the command writes with ``--json``."""

from __future__ import annotations

from django.db import models

from ground.amounts import counted


class OptimizationRun(models.Model):
    study = models.CharField(max_length=200, unique=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    strategy = models.CharField(max_length=64)
    objective = models.CharField(max_length=16)
    files = models.JSONField(default=list)
    space = models.JSONField(default=list)
    trials = models.PositiveIntegerField(help_text="finished trials (complete and pruned), every fold")
    walk_forward = models.PositiveIntegerField(default=0, help_text="folds; 0: no walk-forward")
    best_params = models.JSONField(default=dict)
    best_value = models.FloatField(null=True, blank=True)
    backtest_command = models.TextField(blank=True)
    report = models.JSONField()

    class Meta:
        ordering = ["-updated_at", "-id"]

    def __str__(self) -> str:
        best = "–" if self.best_value is None else f"{self.best_value:.4g}"
        return f"{self.study}: {self.strategy} {self.objective} best {best} over {counted(self.trials, 'trial')}"
