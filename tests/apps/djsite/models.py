from django.db import models


class Visit(models.Model):
    label = models.CharField(max_length=100)
    number = models.IntegerField()
