from django.apps import AppConfig


class OptimizeConfig(AppConfig):
    name = "optimize"
    verbose_name = "Optimization"
