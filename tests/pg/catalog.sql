-- The catalog of schema :ns, one line per fact (table, column with type/nullability/default, constraint,
-- index, enum type, function signature, sequence, trigger, policy, RLS flag and grants), with the
-- grantors left out, so two schemas (in the same namespace) can be compared with diff. Used by
-- tests/pg/compare_with_gotrue.sh.
with ns as (select oid from pg_namespace where nspname = :'ns')
select 'table ' || c.relname || ' kind=' || c.relkind::text || ' rls=' || c.relrowsecurity || ' acl=' || coalesce(regexp_replace(c.relacl::text, '/[a-z_]+', '', 'g'), '-')
  from pg_class c where c.relnamespace = (select oid from ns) and c.relkind in ('r','S','v','m','p')
union all
select 'column ' || c.relname || '.' || a.attname || ' #' || row_number() over (partition by c.oid order by a.attnum) || ' ' || format_type(a.atttypid, a.atttypmod)
  || case when a.attnotnull then ' not null' else '' end
  || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
  || case when a.attgenerated = 's' then ' generated' else '' end
  || case when a.attidentity <> '' then ' identity' else '' end
  from pg_attribute a join pg_class c on c.oid = a.attrelid left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
  where c.relnamespace = (select oid from ns) and c.relkind = 'r' and a.attnum > 0 and not a.attisdropped
union all
select 'constraint ' || c.relname || ' ' || k.conname || ' ' || k.contype::text || ' ' || pg_get_constraintdef(k.oid) || ' validated=' || k.convalidated || ' deferrable=' || k.condeferrable
  from pg_constraint k join pg_class c on c.oid = k.conrelid where c.relnamespace = (select oid from ns)
union all
select 'index ' || i.indexrelid::regclass::text || ' ' || regexp_replace(pg_get_indexdef(i.indexrelid), 'INDEX \S+ ON \S+ ', 'INDEX ON ')
  from pg_index i join pg_class c on c.oid = i.indrelid where c.relnamespace = (select oid from ns)
union all
select 'type ' || t.typname || ' enum(' || string_agg(e.enumlabel, ',' order by e.enumsortorder) || ')'
  from pg_type t join pg_enum e on e.enumtypid = t.oid where t.typnamespace = (select oid from ns) group by t.typname
union all
select 'function ' || p.proname || '(' || pg_get_function_arguments(p.oid) || ') returns ' || pg_get_function_result(p.oid)
  || ' lang=' || l.lanname || ' volatile=' || p.provolatile::text || ' secdef=' || p.prosecdef || ' strict=' || p.proisstrict
  from pg_proc p join pg_language l on l.oid = p.prolang where p.pronamespace = (select oid from ns)
union all
select 'sequence ' || s.seqrelid::regclass::text || ' ' || format_type(s.seqtypid, null) || ' owned_by=' || coalesce((select c2.relname || '.' || a.attname from pg_depend dp join pg_class c2 on c2.oid = dp.refobjid join pg_attribute a on a.attrelid = dp.refobjid and a.attnum = dp.refobjsubid where dp.objid = s.seqrelid and dp.deptype = 'a'), '-')
  from pg_sequence s join pg_class c on c.oid = s.seqrelid where c.relnamespace = (select oid from ns)
union all
select 'trigger ' || t.tgname from pg_trigger t join pg_class c on c.oid = t.tgrelid where c.relnamespace = (select oid from ns) and not t.tgisinternal
union all
select 'policy ' || p.polname from pg_policy p join pg_class c on c.oid = p.polrelid where c.relnamespace = (select oid from ns)
order by 1;
