"""Django's admin, for staff only: everyone else gets a 404, as for a page that is not there.

Django's own admin answers anyone with its login page, which tells a visitor that
the site has an admin and where to try passwords. Here staff log in through the
app's own login (throttled, chat/limits.py) and then open /admin/.
"""

from functools import update_wrapper

from django.contrib.admin import AdminSite
from django.contrib.admin.apps import AdminConfig
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect


class StaffOnlyAdminSite(AdminSite):
    def admin_view(self, view, cacheable=False):
        inner = super().admin_view(view, cacheable)

        def staff_only(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if not self.has_permission(request):
                raise Http404
            return inner(request, *args, **kwargs)

        return update_wrapper(staff_only, view)

    def login(self, request: HttpRequest, extra_context=None) -> HttpResponse:
        if not self.has_permission(request):
            raise Http404
        return redirect("admin:index")


class StaffOnlyAdminConfig(AdminConfig):
    default_site = "playground.admin_site.StaffOnlyAdminSite"
