// Enrichment of the original FlowEngine's customer example, written against its context API.
function process(context) {
  const row = context.input.current();
  const first = row.first_name;
  const last = row.last_name;
  const age = row.age;
  const email = row.email;
  const value = row.account_value;

  let ageCategory;
  if (age < 25) ageCategory = 'Young Adult';
  else if (age < 45) ageCategory = 'Adult';
  else if (age < 65) ageCategory = 'Middle Age';
  else ageCategory = 'Senior';

  const at = email.indexOf('@');
  const domain = at >= 0 ? email.substring(at + 1) : '';

  let valueCategory;
  let score;
  if (value >= 100000) { valueCategory = 'Premium'; score = 40; }
  else if (value >= 50000) { valueCategory = 'Gold'; score = 30; }
  else if (value >= 10000) { valueCategory = 'Silver'; score = 20; }
  else { valueCategory = 'Standard'; score = 10; }
  if (ageCategory === 'Adult' || ageCategory === 'Middle Age') score += 20;
  if (domain.indexOf('gmail') >= 0 || domain.indexOf('yahoo') >= 0) score += 10;

  const out = context.output;
  out.setField('customer_id', row.customer_id);
  out.setField('full_name', first + ' ' + last);
  out.setField('first_name', first);
  out.setField('last_name', last);
  out.setField('age', age);
  out.setField('age_category', ageCategory);
  out.setField('email', email);
  out.setField('email_domain', domain);
  out.setField('account_value', value);
  out.setField('value_category', valueCategory);
  out.setField('priority_score', score);
  out.setField('processed_date', context.utils.now().toISOString());
  return true;
}
