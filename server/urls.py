from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView

from app.views import dashboard

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="dashboard", permanent=False)),
    path("dashboard/", dashboard, name="dashboard"),
    path("admin/", admin.site.urls),
]
