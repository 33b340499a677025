"""What the runs show: metrics, statistics over seeds, reports (text / JSON / HTML), the many-worlds report,
the summary in words (story), the Lesson page's steps (lesson) and one colour per run label (colors).
"""
