"""The tables a command prints, as text: pure functions from a results dict to a string.

Rendered without colour at a fixed width (80 columns by default: a log or a narrow terminal), so
what a test reads is what a user sees. Intervals are one cell each (`ci`), never split across
lines; wide results are printed as several narrow tables rather than one wide one.

One place to import every table from; each lives in the module of what it is for:
`tables_render` (rendering and cell formats), `tables_teachers` (models, steer, match-multiplier,
divergence), `tables_runs` (run, sweep, lr-select), `tables_analysis` (analyze, entangle),
`tables_audit` (audit, row-audit, select, lineage) and `tables_toy` (mnist, theorem).
"""

from interp.tables_analysis import analysis_tables as analysis_tables
from interp.tables_analysis import entangled_tables as entangled_tables
from interp.tables_analysis import prompting_tables as prompting_tables
from interp.tables_audit import audit_table as audit_table
from interp.tables_audit import lineage_text as lineage_text
from interp.tables_audit import row_audit_table as row_audit_table
from interp.tables_audit import selection_line as selection_line
from interp.tables_render import WIDTH as WIDTH
from interp.tables_render import ci as ci
from interp.tables_render import mean as mean
from interp.tables_render import p_text as p_text
from interp.tables_render import render as render
from interp.tables_runs import SIGN_FLIP_HEADER as SIGN_FLIP_HEADER
from interp.tables_runs import e1_tables as e1_tables
from interp.tables_runs import lr_select_plan_text as lr_select_plan_text
from interp.tables_runs import lr_select_table as lr_select_table
from interp.tables_runs import plan_table as plan_table
from interp.tables_runs import sweep_plan_table as sweep_plan_table
from interp.tables_runs import sweep_tables as sweep_tables
from interp.tables_teachers import divergence_tables as divergence_tables
from interp.tables_teachers import match_table as match_table
from interp.tables_teachers import models_table as models_table
from interp.tables_teachers import steer_table as steer_table
from interp.tables_toy import mnist_tables as mnist_tables
from interp.tables_toy import theorem_table as theorem_table
