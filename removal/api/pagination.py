from rest_framework.pagination import PageNumberPagination


class Pagination(PageNumberPagination):
    """``?page=N``; ``?page_size=N`` (up to 100) overrides the default ``QUICKBG_PAGE_SIZE``."""

    page_size_query_param = "page_size"
    max_page_size = 100
