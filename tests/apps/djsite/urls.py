from django.urls import path

from djsite import views

urlpatterns = [
    path("visit/<int:number>", views.visit),
    path("ping", views.ping),
]
