-- Per-run working tables live apart from the mart, so readers of bionicpro_reports never see them.
CREATE DATABASE IF NOT EXISTS bionicpro_staging;
