from django.contrib import admin

from ground.admin_history import HistoryAdmin

from .models import OptimizationRun


@admin.register(OptimizationRun)
class OptimizationRunAdmin(HistoryAdmin):
    list_display = ["study", "strategy", "objective", "trials", "failed", "walk_forward", "best_value", "updated_at"]
    list_filter = ["strategy", "objective"]
    search_fields = ["study"]

    @admin.display(description="failed trials")
    def failed(self, run: OptimizationRun) -> int:
        return len(run.report.get("failed", []))
