from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="conductor:dashboard", permanent=False)),
    path("dashboard/", include("app.urls")),
    path("admin/", admin.site.urls),
]
