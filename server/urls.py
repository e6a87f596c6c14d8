from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from app import views

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="conductor:dashboard", permanent=False)),
    path("dashboard/", include("app.urls")),
    path("admin/", admin.site.urls),
    # Where scrapers and load balancers look first; the same views are under dashboard/ too.
    path("metrics", views.metrics),
    path("health", views.health),
]
