from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from chat.views import accounts

urlpatterns = [
    # Staff only: anyone else gets a 404 (playground/admin_site.py).
    path("admin/", admin.site.urls),
    # Log in, log out and change password. No password reset: accounts have no email
    # address, and the app sends no mail (an operator runs `manage.py changepassword`).
    path("accounts/login/", accounts.LoginView.as_view(), name="login"),  # throttled
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path(
        "accounts/password_change/",
        auth_views.PasswordChangeView.as_view(),
        name="password_change",
    ),
    path(
        "accounts/password_change/done/",
        auth_views.PasswordChangeDoneView.as_view(),
        name="password_change_done",
    ),
    path("", include("chat.urls")),
]
