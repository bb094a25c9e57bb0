from django.urls import path

from shop import views

urlpatterns = [
    path("", views.index, name="index"),
    path("orders/", views.order_form, name="order-form"),
    path("orders/<int:order_id>/", views.order_detail, name="order-detail"),
    path("api/orders", views.api_place_order, name="api-place-order"),
    path("api/orders/<int:order_id>", views.api_order, name="api-order"),
    path("api/products", views.api_products, name="api-products"),
    path("api/recommendations", views.api_recommend, name="api-recommend"),
    path("api/recommendations/stats", views.api_recommend_stats, name="api-recommend-stats"),
]
