"""``manage.py runserver`` served by daphne (ASGI: the websocket too), loaded only when it runs.

Listing ``daphne`` itself in INSTALLED_APPS would import ``daphne.server`` (and Twisted's reactor) in every
process at ``django.setup()``, a backtest or ``--help`` included. This app sits first in INSTALLED_APPS so its
``runserver`` wins over ``django.contrib.staticfiles``'s; Django imports a command's module only to run it.
"""
