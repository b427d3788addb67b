from django.contrib import admin

from .models import OptimizationRun


@admin.register(OptimizationRun)
class OptimizationRunAdmin(admin.ModelAdmin):
    list_display = ["study", "strategy", "objective", "trials", "walk_forward", "best_value", "updated_at"]
    list_filter = ["strategy", "objective"]
    search_fields = ["study"]
    readonly_fields = [f.name for f in OptimizationRun._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False
